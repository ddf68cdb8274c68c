-- Tables of our own, prefixed oscarbox_ so that they never collide with OSCAR's.

-- Box-wide settings every instance must agree on.
CREATE TABLE IF NOT EXISTS oscarbox_settings (
  name varchar(64) NOT NULL PRIMARY KEY,
  value varchar(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- OSCAR derives SOAP tokens from the JVM's start time, so every Tomcat restart invalidates
-- them. Our instances restart independently and any of them may serve a client, so the epoch
-- is shared: set once, here.
INSERT IGNORE INTO oscarbox_settings (name, value)
  VALUES ('ws_token_epoch_ms', CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS CHAR));

-- Failed sign-ins per account, shared by all instances so that spreading guesses over them
-- gains nothing.
CREATE TABLE IF NOT EXISTS oscarbox_login_failure (
  user_name varchar(30) NOT NULL PRIMARY KEY,
  failures int NOT NULL,
  first_failure datetime NOT NULL,
  locked_until datetime NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
