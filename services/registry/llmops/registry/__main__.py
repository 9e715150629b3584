from llmops.core.service import main
from llmops.registry.app import RegistryService
from llmops.registry.settings import Settings

if __name__ == "__main__":
    main(Settings, RegistryService)
