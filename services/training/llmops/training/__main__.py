from llmops.core.service import main
from llmops.training.app import TrainingService
from llmops.training.settings import Settings

if __name__ == "__main__":
    main(Settings, TrainingService)
