-- The clinical API's tables. OSCAR's OAuth 1.0a tables exactly as OSCAR 19 creates them
-- (reference §2.3), so that an imported OSCAR keeps its registered clients; then our own.

CREATE TABLE IF NOT EXISTS ServiceClient (
  id int(11) NOT NULL AUTO_INCREMENT, name varchar(255) NOT NULL,
  clientKey varchar(255) NOT NULL, clientSecret varchar(255) NOT NULL, uri varchar(255) DEFAULT NULL,
  lifetime int, dateCreated timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ServiceRequestToken (
  id int(11) NOT NULL AUTO_INCREMENT, clientId int(11) DEFAULT NULL,
  tokenId varchar(255) NOT NULL, tokenSecret varchar(255) NOT NULL, callback varchar(255) NOT NULL,
  verifier varchar(255) DEFAULT NULL, providerNo varchar(25) DEFAULT NULL, scopes varchar(255) DEFAULT NULL,
  dateCreated timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ServiceAccessToken (
  id int(11) NOT NULL AUTO_INCREMENT, clientId int(11) DEFAULT NULL,
  tokenId varchar(255) NOT NULL, tokenSecret varchar(255) NOT NULL, lifetime int(10) NOT NULL,
  issued int(10) NOT NULL, providerNo varchar(25) DEFAULT NULL, scopes varchar(255) DEFAULT NULL,
  dateCreated timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- OSCAR looks tokens and clients up by these; it relied on small tables.
CREATE INDEX IF NOT EXISTS client_key ON ServiceClient (clientKey);
CREATE INDEX IF NOT EXISTS token_id ON ServiceRequestToken (tokenId);
CREATE INDEX IF NOT EXISTS token_id ON ServiceAccessToken (tokenId);

-- OAuth nonces already used, by a hash of client key, nonce and timestamp, kept for as long as
-- the timestamp could still be accepted: a replay within that window is refused on any instance.
CREATE TABLE IF NOT EXISTS oscarbox_oauth_nonce (
  nonce_hash binary(32) NOT NULL PRIMARY KEY,
  expires datetime NOT NULL,
  KEY expires (expires)
) ENGINE=InnoDB;

-- Browser sessions, in the database so that any instance serves any browser and a restarted
-- instance signs nobody out. The cookie's value is never stored, only its SHA-256: someone who
-- reads this table (a backup, a replica) cannot use the sessions in it.
CREATE TABLE IF NOT EXISTS oscarbox_session (
  id_hash binary(32) NOT NULL PRIMARY KEY,
  security_no int NOT NULL,
  provider_no varchar(6),
  csrf varchar(64) NOT NULL,
  ip varchar(64),
  created datetime NOT NULL,
  last_seen datetime NOT NULL,
  expires datetime NOT NULL,
  KEY expires (expires),
  KEY security_no (security_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- What each stored document's file holds, recorded when it was written: a later read can tell
-- a damaged or replaced file from the original.
CREATE TABLE IF NOT EXISTS oscarbox_document_file (
  document_no int NOT NULL PRIMARY KEY,
  sha256 char(64) NOT NULL,
  size bigint NOT NULL
) ENGINE=InnoDB;
