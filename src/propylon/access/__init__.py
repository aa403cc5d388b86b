"""Access and traffic control: tenants, API keys, scopes, rate limits and budgets."""
