#!/usr/bin/env python3
"""Sign RS256 JWTs and write the JWKS of their key, for bench/run.sh.

Python's standard library cannot sign with RSA, so the signature comes from
`openssl dgst -sha256 -sign`, which for an RSA key is RSASSA-PKCS1-v1_5 with
SHA-256: exactly JWS "RS256" (RFC 7518, section 3.3). The JWKS modulus comes
from `openssl rsa -modulus`.

Writes to --out-dir:
  jwks.json             the public key as a JWKS with one RS256 key
  token                 a valid token, --lifetime seconds from now
  token-expired         the same claims, expired an hour ago
  token-wrong-audience  a valid token for another audience
  token-bad-signature   the valid token with its signature changed
"""

import argparse
import base64
import json
import os
import subprocess
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="RSA private key, PEM")
    parser.add_argument("--kid", required=True, help="key id, in the JWT header and the JWKS")
    parser.add_argument("--issuer", required=True, help="the iss claim")
    parser.add_argument("--audience", required=True, help="the aud claim, one string")
    parser.add_argument("--subject", required=True, help="the sub claim")
    parser.add_argument("--lifetime", type=int, default=86400, help="seconds until the valid token expires")
    parser.add_argument("--out-dir", required=True, help="folder for the JWKS and the tokens")
    return parser.parse_args()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def run_openssl(arguments, stdin=None):
    result = subprocess.run(["openssl", *arguments], input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"openssl {' '.join(arguments)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def sign(key_path, kid, claims):
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    ).encode("ascii")
    signature = run_openssl(["dgst", "-sha256", "-sign", key_path], stdin=signing_input)
    return signing_input.decode("ascii") + "." + b64url(signature)


def public_jwk(key_path, kid):
    # Output is "Modulus=<HEX>"; RSA keys from openssl genpkey use e = 65537.
    modulus_hex = run_openssl(["rsa", "-in", key_path, "-noout", "-modulus"]).decode().strip().split("=", 1)[1]
    exponent_text = run_openssl(["rsa", "-in", key_path, "-noout", "-text"]).decode()
    if "publicExponent: 65537 " not in exponent_text:
        raise SystemExit(f"{key_path}: expected the public exponent 65537")
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": b64url(bytes.fromhex(modulus_hex)),
        "e": b64url((65537).to_bytes(3, "big")),
    }


def with_changed_signature(token):
    head, _, signature = token.rpartition(".")
    # Change the first character, which carries whole bits of the signature.
    first = "B" if signature[0] != "B" else "C"
    return f"{head}.{first}{signature[1:]}"


def write(out_dir, name, text):
    with open(os.path.join(out_dir, name), "w") as out:
        out.write(text)


def main():
    args = parse_args()
    now = int(time.time())
    claims = {"iss": args.issuer, "aud": args.audience, "sub": args.subject, "iat": now, "exp": now + args.lifetime}
    expired = dict(claims, iat=now - 7200, exp=now - 3600)
    wrong_audience = dict(claims, aud=args.audience + "-other")

    token = sign(args.key, args.kid, claims)
    write(args.out_dir, "jwks.json", json.dumps({"keys": [public_jwk(args.key, args.kid)]}) + "\n")
    write(args.out_dir, "token", token)
    write(args.out_dir, "token-expired", sign(args.key, args.kid, expired))
    write(args.out_dir, "token-wrong-audience", sign(args.key, args.kid, wrong_audience))
    write(args.out_dir, "token-bad-signature", with_changed_signature(token))


if __name__ == "__main__":
    main()
