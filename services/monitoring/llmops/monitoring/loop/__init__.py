"""The feedback loop: policy, canary analysis and the controller that runs them."""
