from shared.service import serve
from services.accounts.service import AccountsService

serve(AccountsService)
