from llmops.core.service import main
from llmops.feedback.app import FeedbackService
from llmops.feedback.settings import Settings

if __name__ == "__main__":
    main(Settings, FeedbackService)
