"""Background runs: chat requests, RAG answers and small chains executed as durable jobs."""
