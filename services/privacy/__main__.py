from shared.service import serve
from services.privacy.service import PrivacyService

serve(PrivacyService)
