"""NeuroWeaver in the API: the predict hot path, the model holder and its hot reload, training
runs, registry versions with promotion and rollback, and MLflow's alias webhooks."""
