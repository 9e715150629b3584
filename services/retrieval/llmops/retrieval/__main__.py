from llmops.core.service import main
from llmops.retrieval.app import RetrievalService
from llmops.retrieval.settings import Settings

if __name__ == "__main__":
    main(Settings, RetrievalService)
