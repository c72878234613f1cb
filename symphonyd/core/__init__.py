"""Pure domain logic. Nothing here performs I/O or imports another symphonyd package."""
