"""The deploy rehearsal: run what `cdk deploy` creates (cdk.out) on this machine, every call authorized."""
