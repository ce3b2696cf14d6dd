from shared.service import serve
from services.payments.service import PaymentsService

serve(PaymentsService)
