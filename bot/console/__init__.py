"""The counsellors' web console: `/console` (page) and `/console/api/` (JSON, see docs/api.md)."""
