"""Promotion and rollback: approved MLflow versions become releases in a versioned S3 bucket,
pinned by S3 VersionId and SHA-256. See registry/README.md."""
