"""The scripts behind the workflow steps (`python -m waterml_infra.ci.<script>`): import-light,
no CDK."""
