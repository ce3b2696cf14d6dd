from shared.service import serve
from services.orders.service import OrdersService

serve(OrdersService)
