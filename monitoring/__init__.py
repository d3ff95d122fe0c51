"""Monitoring after deployment: a prediction log compared with the training profile a bundle
records (drift of the inputs and of the answers, the out-of-domain rate) and, when labels
arrive, live metrics beside the held-out ones. A developer and CI tool: the Lambda image
(``COPY inference/*.py``) ships none of it."""
