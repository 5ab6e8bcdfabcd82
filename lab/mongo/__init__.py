"""The lab's MongoDB: mongod when installed, otherwise the nx-27017 wire-protocol server."""
