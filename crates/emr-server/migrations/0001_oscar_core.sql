-- OSCAR's core tables, as in OSCAR 19's database/mysql/oscarinit.sql (reference §3.3), so that
-- an imported OSCAR database keeps working and OSCAR tools can read ours. Differences that are
-- deliberate: InnoDB always (crash safety and replication need it; many old OSCAR installs are
-- MyISAM) and utf8mb4 (names in every script). Every statement is idempotent.

CREATE TABLE IF NOT EXISTS demographic (
  demographic_no int(10) NOT NULL auto_increment, title varchar(10),
  last_name varchar(30) NOT NULL default '', first_name varchar(30) NOT NULL default '',
  address varchar(60), city varchar(50), province varchar(20), postal varchar(9),
  phone varchar(20), phone2 varchar(20), email varchar(100), myOscarUserName varchar(255) unique,
  year_of_birth varchar(4), month_of_birth varchar(2), date_of_birth varchar(2),
  hin varchar(20), ver char(3), roster_status varchar(20), roster_date date,
  roster_termination_date date, roster_termination_reason varchar(2), roster_enrolled_to varchar(20),
  patient_status varchar(20), patient_status_date date, date_joined date, chart_no varchar(10),
  official_lang varchar(60), spoken_lang varchar(60), provider_no varchar(250),
  sex char(1) NOT NULL default '', end_date date, eff_date date, pcn_indicator varchar(20),
  hc_type varchar(20), hc_renew_date date, family_doctor varchar(80), alias varchar(70),
  previousAddress varchar(255), children varchar(255), sourceOfIncome varchar(255),
  citizenship varchar(40), sin varchar(15), country_of_origin char(4), newsletter varchar(32),
  anonymous varchar(32), lastUpdateUser varchar(6), lastUpdateDate datetime not null,
  middleNames varchar(100), residentialAddress varchar(60), residentialCity varchar(50),
  residentialProvince varchar(20), residentialPostal varchar(9),
  PRIMARY KEY (demographic_no), KEY hin (hin), KEY name (last_name,first_name), KEY country_of_origin (country_of_origin)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS demographicExt (
  id int(10) NOT NULL auto_increment, demographic_no int(10), provider_no varchar(6),
  key_val varchar(64), value text, date_time datetime, hidden char(1) default '0',
  PRIMARY KEY (id), INDEX (demographic_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS provider (
  provider_no varchar(6) NOT NULL default '', last_name varchar(30) NOT NULL default '',
  first_name varchar(30) NOT NULL default '', provider_type varchar(15) NOT NULL default '',
  supervisor varchar(6), specialty varchar(40) NOT NULL default '', team varchar(20) default '',
  sex char(1) NOT NULL default '', dob date, address varchar(40), phone varchar(20), work_phone varchar(50),
  ohip_no varchar(20), rma_no varchar(20), billing_no varchar(20), hso_no varchar(10), status char(1),
  comments text, provider_activity char(3), practitionerNo varchar(20), `init` varchar(10),
  job_title varchar(100), email varchar(60), title varchar(20), lastUpdateUser varchar(6),
  lastUpdateDate datetime not null, signed_confidentiality datetime, practitionerNoType varchar(255),
  PRIMARY KEY (provider_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS security (
  security_no int(6) NOT NULL auto_increment, user_name varchar(30) NOT NULL default '',
  password varchar(255) NOT NULL default '', provider_no varchar(6) default NULL, pin varchar(255) default NULL,
  b_ExpireSet int(1) default 1, date_ExpireDate date default '2100-01-01',
  b_LocalLockSet int(1) default 1, b_RemoteLockSet int(1) default 1,
  forcePasswordReset tinyint(1), passwordUpdateDate datetime, pinUpdateDate datetime,
  lastUpdateUser varchar(20), lastUpdateDate timestamp, oneIdKey VARCHAR(255), oneIdEmail VARCHAR(255),
  delegateOneIdEmail VARCHAR(255),
  PRIMARY KEY (security_no), UNIQUE user_name (user_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS document (
  document_no int(20) NOT NULL auto_increment, doctype varchar(60), docClass varchar(60), docSubClass varchar(60),
  docdesc varchar(255) NOT NULL default '', docxml text, docfilename varchar(255) NOT NULL default '',
  doccreator varchar(30) NOT NULL default '', responsible varchar(30) NOT NULL default '',
  source varchar(60), sourceFacility varchar(120), program_id int, updatedatetime datetime,
  status char(1) NOT NULL default '', contenttype varchar(255) NOT NULL default '', contentdatetime datetime,
  public1 int(1) NOT NULL default '0', observationdate date, reviewer varchar(30) default '',
  reviewdatetime datetime, number_of_pages int(6), appointment_no int(11), restrictToProgram tinyint(1) NOT NULL,
  receivedDate date, abnormal int(1) NOT NULL default '0',
  PRIMARY KEY (document_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS ctl_document (
  module varchar(30) NOT NULL default '', module_id int(6) NOT NULL default '0',
  document_no int(6) NOT NULL default '0', status char(1) default NULL,
  KEY (module), KEY (document_no), PRIMARY KEY (module_id,module,document_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS appointment (
  appointment_no int(12) NOT NULL auto_increment, provider_no varchar(6) NOT NULL default '',
  appointment_date date NOT NULL default '0001-01-01', start_time time NOT NULL default '00:00:00',
  end_time time NOT NULL default '00:00:00', name varchar(50), demographic_no int(10), program_id int default 0,
  notes varchar(255), reasonCode INT(11), reason varchar(80), location varchar(30), resources varchar(255),
  type varchar(50), style varchar(10), billing varchar(10), status char(2) BINARY, imported_status varchar(20),
  createdatetime datetime, updatedatetime datetime, creator varchar(50), lastupdateuser varchar(6),
  remarks varchar(50), urgency varchar(30), creatorSecurityId int, bookingSource varchar(32),
  PRIMARY KEY (appointment_no), KEY appointment_date (appointment_date,start_time,demographic_no),
  KEY demographic_no (demographic_no), KEY location (location)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS `log` (
  id bigint auto_increment primary key, `dateTime` datetime not null, provider_no varchar(10),
  action varchar(100), content varchar(80), contentId varchar(80), ip varchar(64), demographic_no int(10),
  data text, securityId int,
  index `datetime` (`dateTime`, provider_no), INDEX action (action), INDEX content (content),
  INDEX contentId (contentId), INDEX demographic_no (demographic_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
