"""The app's own Lambda functions: CloudFormation custom resources written in plain Python (stdlib and
boto3, which the Lambda runtime carries), so the local round trip runs the very code AWS runs."""
