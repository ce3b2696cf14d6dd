from shared.service import serve
from services.marketing.service import MarketingService

serve(MarketingService)
