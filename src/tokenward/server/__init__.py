"""The authorization server's HTTP edge (FastAPI/Starlette): parses, calls the core, renders."""
