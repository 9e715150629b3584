from llmops.core.service import main
from llmops.serving.app import ServingService
from llmops.serving.settings import Settings

if __name__ == "__main__":
    main(Settings, ServingService)
