// Sends one message through the Taifa relay with nodemailer, as a customer's Node.js app would.
// Usage: node send.mjs  (reads SMTP_HOST, SMTP_PORT, SMTP_SECURE, SMTP_USER, SMTP_PASS, SMTP_CA_FILE,
// MAIL_FROM, MAIL_TO, MAIL_SUBJECT from the environment). Prints the server's reply as JSON.
import fs from "node:fs";
import nodemailer from "nodemailer";

const env = process.env;
const transport = nodemailer.createTransport({
  host: env.SMTP_HOST,
  port: Number(env.SMTP_PORT),
  secure: env.SMTP_SECURE === "true", // implicit TLS (465) when true, STARTTLS otherwise
  requireTLS: true,
  auth: { user: env.SMTP_USER, pass: env.SMTP_PASS },
  tls: { ca: [fs.readFileSync(env.SMTP_CA_FILE)], servername: env.SMTP_SERVERNAME || env.SMTP_HOST },
});

try {
  const info = await transport.sendMail({
    from: env.MAIL_FROM,
    to: env.MAIL_TO,
    subject: env.MAIL_SUBJECT,
    text: "Sent with nodemailer through the Taifa relay.\n",
  });
  console.log(JSON.stringify({ ok: true, response: info.response, messageId: info.messageId }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.responseCode ?? null, response: err.response ?? String(err) }));
  process.exitCode = 1;
}
