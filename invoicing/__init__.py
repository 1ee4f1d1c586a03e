"""invoiceloop's issuing core: issuers, numbering, money, hashes, signatures, the API and the CLI."""
