//! The `herald` command: parses the command line and calls into the library.

use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use herald::auth::token::TokenRequest;
use herald::config::{Config, ProcessEnv, settings_help};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Herald: a real-time push gateway (HTTP publish, Server-Sent Events subscribe), compatible with Neurow.
#[derive(Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the public API (subscribe) and the internal API (publish, admin).
    Serve,
    /// Print a signed token the server accepts (like Neurow's `mix generate_jwt_token`).
    Token(TokenArgs),
    /// Manage API keys in the store (DATABASE_URL or DATA_DIR, as `serve` reads them).
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Manage accounts in the store.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account in ACCOUNTS_ISSUER's namespace; the password is read from the first line
    /// of standard input (never from the command line, which other users can see).
    Add {
        /// The username.
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key for a domain and print it (shown once: only its hash is kept).
    Create {
        /// The namespace the key publishes into.
        #[arg(long)]
        domain: String,
        /// Who the key is for (kept for reference).
        #[arg(long)]
        username: Option<String>,
    },
    /// List the keys (never their secrets).
    List,
    /// Stop accepting a key.
    Disable {
        /// The key's id.
        id: String,
    },
    /// Accept a disabled key again.
    Enable {
        /// The key's id.
        id: String,
    },
    /// Delete a key.
    Delete {
        /// The key's id.
        id: String,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// Which API the token is for.
    #[arg(long, value_enum)]
    api: Api,
    /// The issuer (`iss`); signed with its first secret from JWT_CONFIG (or the development keys).
    #[arg(long)]
    issuer: String,
    /// The topic (`sub`); a public API token needs it, or --grant or --role.
    #[arg(long)]
    topic: Option<String>,
    /// A topic name or `prefix*` pattern the token may read on v2 routes (the `topics` claim);
    /// repeat for several.
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// A role (the `roles` claim), e.g. one of PUBLIC_API_PRIVILEGED_ROLES; repeat for several.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Lifetime in seconds; defaults to the API's maximum (PUBLIC_API_JWT_MAX_LIFETIME or
    /// INTERNAL_API_JWT_MAX_LIFETIME).
    #[arg(long)]
    expiration: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Api {
    Public,
    Internal,
}

fn main() -> ExitCode {
    let help = settings_help();
    let command = Cli::command()
        .after_help(help.clone())
        .mut_subcommand("serve", |c| c.after_help(help));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match Config::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve => serve(config),
        Command::Token(args) => token(&config, args),
        Command::Apikey(command) => apikey(&config, command),
        Command::User(UserCommand::Add { username }) => add_user(&config, &username),
    }
}

fn add_user(config: &Config, username: &str) -> ExitCode {
    use herald::api::store::accounts::{PASSWORD_RULE, USERNAME_RULE, normalise_username, password_fits};
    let Some(name) = normalise_username(username) else {
        eprintln!("herald: {USERNAME_RULE}");
        return ExitCode::from(2);
    };
    let Some(namespace) = config.accounts.issuer.clone() else {
        eprintln!(
            "herald: no issuer can sign login tokens: set ACCOUNTS_ISSUER to an issuer of JWT_CONFIG with a secret"
        );
        return ExitCode::from(2);
    };
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err() {
        eprintln!("herald: cannot read the password from standard input");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if !password_fits(&password) {
        eprintln!("herald: {PASSWORD_RULE} (read from the first line of standard input)");
        return ExitCode::from(2);
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("herald: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let store = match herald::store::Store::open(&config.store).await {
            Ok(Some(store)) => store,
            Ok(None) => {
                eprintln!("herald: no store: a cluster node (REDIS_URL) needs DATABASE_URL=postgres://… for accounts");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("herald: {e} (DATABASE_URL, DATA_DIR)");
                return ExitCode::FAILURE;
            }
        };
        let hash = herald::auth::passwords::Passwords::new(1).hash(password).await;
        let id = herald::store::new_id();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        match store.create_user(&namespace, &id, &name, &hash, now_ms).await {
            Ok(herald::store::users::Created::Done(id)) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Ok(herald::store::users::Created::Taken) => {
                eprintln!("herald: the username {name:?} is taken");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn apikey(config: &Config, command: ApiKeyCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let store = match herald::store::Store::open(&config.store).await {
            Ok(Some(store)) => store,
            Ok(None) => {
                eprintln!("herald: no store: a cluster node (REDIS_URL) needs DATABASE_URL=postgres://… for API keys");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("herald: {e} (DATABASE_URL, DATA_DIR)");
                return ExitCode::FAILURE;
            }
        };
        let failed = |e: &dyn std::fmt::Display| {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let show = |key: &herald::store::api_keys::ApiKey| {
            let state = if key.active { "active" } else { "disabled" };
            println!("{}  {}  {}…  {state}", key.id, key.domain, key.prefix);
        };
        let not_found = |id: &str| {
            eprintln!("herald: no API key {id:?}");
            ExitCode::from(2)
        };
        match command {
            ApiKeyCommand::Create { domain, username } => {
                match herald::api::store::api_keys::create_key(&store, &domain, username, now_ms).await {
                    Ok((key, secret)) => {
                        eprintln!("API key {} for {} (shown once; keep it secret):", key.id, key.domain);
                        println!("{secret}");
                        ExitCode::SUCCESS
                    }
                    Err(herald::api::store::api_keys::CreateError::Store(e)) => failed(&e),
                    Err(e) => {
                        eprintln!("herald: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            ApiKeyCommand::List => match store.api_keys().await {
                Ok(keys) => {
                    keys.iter().for_each(show);
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&e),
            },
            ApiKeyCommand::Disable { id } => match store.set_api_key_active(&id, false).await {
                Ok(Some(key)) => {
                    show(&key);
                    ExitCode::SUCCESS
                }
                Ok(None) => not_found(&id),
                Err(e) => failed(&e),
            },
            ApiKeyCommand::Enable { id } => match store.set_api_key_active(&id, true).await {
                Ok(Some(key)) => {
                    show(&key);
                    ExitCode::SUCCESS
                }
                Ok(None) => not_found(&id),
                Err(e) => failed(&e),
            },
            ApiKeyCommand::Delete { id } => match store.delete_api_key(&id).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => not_found(&id),
                Err(e) => failed(&e),
            },
        }
    })
}

fn serve(config: Config) -> ExitCode {
    herald::observe::logging::init(config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(herald::server::run(config, herald::shutdown::signal_received())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(config: &Config, args: TokenArgs) -> ExitCode {
    let (auth, max_lifetime, variable) = match args.api {
        Api::Public => (
            &config.auth.public,
            config.public_api.jwt_max_lifetime_s,
            "PUBLIC_API_JWT_MAX_LIFETIME",
        ),
        Api::Internal => (
            &config.auth.internal,
            config.internal_api.jwt_max_lifetime_s,
            "INTERNAL_API_JWT_MAX_LIFETIME",
        ),
    };
    if matches!(args.api, Api::Public) && args.topic.is_none() && args.grants.is_empty() && args.roles.is_empty() {
        eprintln!("herald: a public API token needs --topic (its sub claim), --grant or --role");
        return ExitCode::from(2);
    }
    let lifetime = args.expiration.unwrap_or(max_lifetime);
    if lifetime > max_lifetime {
        eprintln!(
            "herald: warning: a lifetime of {lifetime} s is above {variable}={max_lifetime}; the server will refuse this token (too_long_lifetime)"
        );
    }
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let request = TokenRequest {
        issuer: args.issuer,
        subject: args.topic,
        lifetime_s: lifetime,
        topics: args.grants,
        roles: args.roles,
    };
    match request.sign(auth, now_s) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::from(2)
        }
    }
}
