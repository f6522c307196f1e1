"""Business logic. Services take plain arguments, never touch `request`,
and own their transactions."""
