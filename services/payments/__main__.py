from services.payments.service import PaymentsService
from services.topology import subscriptions
from shared.service import serve

serve(PaymentsService, subscriptions())
