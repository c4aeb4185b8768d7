"""What `make dev` prints when the stack is ready: where things are and copy-paste examples.

The examples are data (`EXAMPLES`) so the end-to-end tests run exactly the text that is printed.
"""

from __future__ import annotations

# Relative to the repository root, where `make dev` runs; .taifa/ is git-ignored.
CREDENTIAL_FILE = ".taifa/smtp-credential.json"

EXAMPLES: list[tuple[str, str]] = [
    (
        "In another terminal at the repository root, load the settings (every example below uses them)",
        "set -a; . .taifa/dev.env; set +a",
    ),
    (
        "Create the SMTP credential for the demo domain (the password is shown only in this response;\n"
        "  one active credential per domain, so a second run answers 409)",
        'curl -sS -X POST "$TAIFA_API_URL/v1/smtp/credentials" \\\n'
        '  -H "Authorization: Bearer $TAIFA_API_KEY" -H "Content-Type: application/json" \\\n'
        '  -d "{\\"domain_id\\": \\"$TAIFA_DOMAIN_ID\\"}" | (umask 077; tee ' + CREDENTIAL_FILE + ")\n"
        "SMTP_USER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"username\"])' "
        + CREDENTIAL_FILE
        + ")\n"
        "SMTP_PASS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"password\"])' "
        + CREDENTIAL_FILE
        + ")",
    ),
    (
        "Send with swaks (STARTTLS, AUTH LOGIN)",
        'swaks --server "$TAIFA_SMTP_HOST" --port "$TAIFA_SMTP_PORT" \\\n'
        '  --tls --tls-verify --tls-ca-path "$TAIFA_CA_FILE" \\\n'
        '  --auth LOGIN --auth-user "$SMTP_USER" --auth-password "$SMTP_PASS" \\\n'
        '  --from "hello@$TAIFA_DOMAIN" --to someone@example.net --header "Subject: Hello from swaks"',
    ),
    (
        "Send with Python smtplib (STARTTLS)",
        "python3 - <<'PY'\n"
        "import json, os, smtplib, ssl\n"
        "from email.message import EmailMessage\n"
        f'cred = json.load(open("{CREDENTIAL_FILE}"))\n'
        "msg = EmailMessage()\n"
        'msg["From"] = "hello@" + os.environ["TAIFA_DOMAIN"]\n'
        'msg["To"] = "someone@example.net"\n'
        'msg["Subject"] = "Hello from smtplib"\n'
        'msg.set_content("Sent through the Taifa relay.")\n'
        'context = ssl.create_default_context(cafile=os.environ["TAIFA_CA_FILE"])\n'
        'with smtplib.SMTP(os.environ["TAIFA_SMTP_HOST"], int(os.environ["TAIFA_SMTP_PORT"])) as smtp:\n'
        "    smtp.starttls(context=context)\n"
        '    smtp.login(cred["username"], cred["password"])\n'
        "    smtp.send_message(msg)\n"
        'print("sent")\n'
        "PY",
    ),
    (
        "See what was delivered (the local upstream stores every message in a Maildir)",
        'ls -t "$TAIFA_MAILDIR/new" | head && cat "$TAIFA_MAILDIR/new/$(ls -t "$TAIFA_MAILDIR/new" | head -1)"',
    ),
]


def render(env: dict[str, str], env_file: str) -> str:
    lines = [
        "",
        "Taifa Mail dev stack is ready. Ctrl-C stops everything.",
        "",
        f"  API        {env['TAIFA_API_URL']}  (OpenAPI: {env['TAIFA_API_URL']}/openapi.json)",
        f"  SMTP       {env['TAIFA_SMTP_HOST']}:{env['TAIFA_SMTP_PORT']} STARTTLS, "
        f"{env['TAIFA_SMTP_HOST']}:{env['TAIFA_SMTPS_PORT']} implicit TLS",
        f"  TLS CA     {env['TAIFA_CA_FILE']}  (dev only, made at start)",
        f"  Demo       account {env['TAIFA_ACCOUNT_ID']} (plan pro), verified domain {env['TAIFA_DOMAIN']}",
        f"  Delivered  {env['TAIFA_MAILDIR']}/new",
        f"  Settings   {env_file}  (API key, URLs; `taifa-admin` works with them loaded)",
        "",
    ]
    for title, snippet in EXAMPLES:
        lines += [f"# {title}:", snippet, ""]
    return "\n".join(lines)
