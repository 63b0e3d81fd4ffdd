"""The one-machine runtime: embedded Postgres, a local SQS API, and the AWS handlers wired locally."""
