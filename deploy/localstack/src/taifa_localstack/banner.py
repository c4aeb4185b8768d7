"""What `make dev` prints when the stack is ready: where things are and copy-paste examples.

The examples are data (`EXAMPLES`) so the end-to-end tests run exactly the text that is printed.
"""

from __future__ import annotations

# Relative to the repository root, where `make dev` runs; .taifa/ is git-ignored.
CREDENTIAL_FILE = ".taifa/smtp-credential.json"
WEBHOOK_FILE = ".taifa/webhook.json"

# Checks a delivery the local receiver logged with the webhook's secret, as Standard Webhooks says (the
# `standardwebhooks` package does the same: Webhook(secret).verify(body, headers)); stdlib only, so any python3 runs it.
VERIFY_WEBHOOK = (
    "python3 - <<'PY'\n"
    "import base64, hashlib, hmac, json, os, time\n"
    f'secret = json.load(open("{WEBHOOK_FILE}"))["secret"]\n'
    'key = base64.b64decode(secret.removeprefix("whsec_"))\n'
    "deadline = time.time() + 60\n"
    "while True:\n"
    '    for line in open(os.environ["TAIFA_WEBHOOK_LOG"]):\n'
    "        seen = json.loads(line)\n"
    '        headers, body = seen["headers"], seen["body"]\n'
    '        signed = f\'{headers["webhook-id"]}.{headers["webhook-timestamp"]}.{body}\'.encode()\n'
    "        mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()\n"
    '        event = json.loads(body)["type"]\n'
    '        if "v1," + mac in headers["webhook-signature"].split(" ") and event == "smtp_credential.created":\n'
    '            print("webhook verified:", headers["webhook-id"], event)\n'
    "            raise SystemExit\n"
    "    if time.time() > deadline:\n"
    '        raise SystemExit("no smtp_credential.created signed with this webhook\'s secret yet")\n'
    "    time.sleep(1)\n"
    "PY"
)

EXAMPLES: list[tuple[str, str]] = [
    (
        "In another terminal at the repository root, load the settings (every example below uses them)",
        "set -a; . .taifa/dev.env; set +a",
    ),
    (
        "Create a webhook to the local receiver, for every event (its signing secret is shown only in this\n"
        "  response; make dev allows http and loopback URLs, production only https to public addresses)",
        'curl -sS -X POST "$TAIFA_API_URL/v1/webhooks" \\\n'
        '  -H "Authorization: Bearer $TAIFA_API_KEY" -H "Content-Type: application/json" \\\n'
        '  -d "{\\"url\\": \\"$TAIFA_WEBHOOK_RECEIVER_URL\\", \\"events\\": [\\"*\\"]}" | (umask 077; tee '
        + WEBHOOK_FILE
        + ")",
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
    (
        "Check the signed webhook the credential's creation sent (smtp_credential.created; the receiver logs\n"
        "  every request to $TAIFA_WEBHOOK_LOG; the history: GET $TAIFA_API_URL/v1/webhooks/{id}/deliveries)",
        VERIFY_WEBHOOK,
    ),
]


def render(env: dict[str, str], env_file: str) -> str:
    lines = [
        "",
        "Taifa Mail dev stack is ready. Ctrl-C stops everything.",
        "",
        f"  API        {env['TAIFA_API_URL']}  (OpenAPI: {env['TAIFA_API_URL']}/openapi.json)",
        f"  Console    {env.get('TAIFA_CONSOLE_SIGN_IN_URL', env['TAIFA_API_URL'] + '/console/')}",
        "             (one-time sign-in link for the demo account; another: taifa-admin session sign-in-link "
        '--account "$TAIFA_ACCOUNT_ID")',
        f"  SMTP       {env['TAIFA_SMTP_HOST']}:{env['TAIFA_SMTP_PORT']} STARTTLS, "
        f"{env['TAIFA_SMTP_HOST']}:{env['TAIFA_SMTPS_PORT']} implicit TLS",
        f"  TLS CA     {env['TAIFA_CA_FILE']}  (dev only, made at start)",
        f"  Demo       account {env['TAIFA_ACCOUNT_ID']} (plan pro), verified domain {env['TAIFA_DOMAIN']}",
        f"  Delivered  {env['TAIFA_MAILDIR']}/new",
        f"  Webhooks   receiver {env.get('TAIFA_WEBHOOK_RECEIVER_URL', '-')}, log {env.get('TAIFA_WEBHOOK_LOG', '-')}",
        f"  Settings   {env_file}  (API key, URLs; `taifa-admin` works with them loaded)",
        "",
    ]
    for title, snippet in EXAMPLES:
        # Every line of a title is a comment: the examples are pasted into a shell as they are printed.
        lines += [*(f"# {part}" for part in f"{title}:".split("\n")), snippet, ""]
    return "\n".join(lines)
