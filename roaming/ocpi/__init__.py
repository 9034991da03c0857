"""The OCPI edge: transport rules (envelope, tokens, headers, paging) and the module views."""
