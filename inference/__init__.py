"""Serving side: the bundle contract, the predictor and the Lambda handler.

Nothing here imports ``training`` or ``registry``; training imports this package's contract
(bundle format, feature matrix, output interpretation) so training and serving cannot skew.
"""
