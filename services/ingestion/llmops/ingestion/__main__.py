from llmops.core.service import main
from llmops.ingestion.app import IngestionService
from llmops.ingestion.settings import Settings

if __name__ == "__main__":
    main(Settings, IngestionService)
