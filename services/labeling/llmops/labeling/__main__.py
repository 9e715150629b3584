from llmops.core.service import main
from llmops.labeling.app import LabelingService
from llmops.labeling.settings import Settings

if __name__ == "__main__":
    main(Settings, LabelingService)
