from services.marketing.service import MarketingService
from services.topology import subscriptions
from shared.service import serve

serve(MarketingService, subscriptions())
