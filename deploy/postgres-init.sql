-- One database per store (the metric store's is created by POSTGRES_DB).
CREATE DATABASE automatrix_mlflow OWNER automatrix;
CREATE DATABASE automatrix_optuna OWNER automatrix;
CREATE DATABASE automatrix_prefect OWNER automatrix;
