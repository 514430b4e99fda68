"""GraphRoute's HTTP service: a thin FastAPI layer over ``graphroute.Router``."""
