"""The HTTP door: Amazon Rekognition's wire protocol (AWS JSON 1.1) with SigV4 authentication."""
