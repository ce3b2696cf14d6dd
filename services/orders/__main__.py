from services.orders.service import OrdersService
from services.topology import subscriptions
from shared.service import serve

serve(OrdersService, subscriptions())
