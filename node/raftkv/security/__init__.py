"""Transport security shared by the node, the client and the tools: certificates
(`pki`) and TLS contexts that follow their files (`tls`)."""
