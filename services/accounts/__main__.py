from services.accounts.service import AccountsService
from services.topology import subscriptions
from shared.service import serve

serve(AccountsService, subscriptions())
