from llmops.core.service import main
from llmops.monitoring.app import MonitoringService
from llmops.monitoring.settings import Settings

if __name__ == "__main__":
    main(Settings, MonitoringService)
