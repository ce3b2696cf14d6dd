from services.privacy.service import PrivacyService
from services.topology import subscriptions
from shared.service import serve

serve(PrivacyService, subscriptions())
