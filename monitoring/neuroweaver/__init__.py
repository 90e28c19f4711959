"""NeuroWeaver: the model that predicts a service's performance score from its five metrics."""
