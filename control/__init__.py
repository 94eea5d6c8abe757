"""The control plane: REST API, auth, storage, events and webhooks, in the serve process."""
