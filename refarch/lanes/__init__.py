"""The two lanes into the index: the message contract (`messages`), sending to a lane's queue
(`queues`), and the deployment shape CDK and the local runtime share (`topology`)."""
