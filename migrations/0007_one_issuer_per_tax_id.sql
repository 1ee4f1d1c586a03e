-- One issuer per tax ID: a second issuer with the same unified social credit code is refused (409), and the
-- index settles two creations racing each other. Earlier duplicates, if any, must be merged by hand first.
CREATE UNIQUE INDEX issuers_tax_id ON issuers (tax_id);
