"""A real OpenID provider for the integration tests: oidc-provider-mock (Flask and Authlib, from
PyPI) with PKCE enforced (Authlib's CodeChallenge: a code whose authorization request carried a
challenge is only traded for its verifier), the nonce required and clients registered.

Registers one client for --redirect-uri (client_secret_basic) and prints its id and secret as
one JSON line when it listens on 127.0.0.1:--port; runs until its standard input closes. Users:
ada (ada@example.com) and eve (eve@other.example), both verified; any other subject typed in the
form is a user whose e-mail is the subject.
"""

import argparse
import json
import sys
import threading
import warnings

warnings.filterwarnings("ignore")

import werkzeug.serving  # noqa: E402
from authlib.integrations.flask_oauth2 import AuthorizationServer  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402

import oidc_provider_mock  # noqa: E402
import oidc_provider_mock._app as mock_app  # noqa: E402

# The code challenge of each code, recorded when the code is made.
challenges = {}
save_code = mock_app.AuthorizationCodeGrant.save_authorization_code


def save_authorization_code(self, code, request):
    data = request.payload.data
    challenges[code] = (data.get("code_challenge"), data.get("code_challenge_method"))
    return save_code(self, code, request)


mock_app.AuthorizationCodeGrant.save_authorization_code = save_authorization_code


class Pkce(CodeChallenge):
    def get_authorization_code_challenge(self, authorization_code):
        return challenges.get(authorization_code.code, (None, None))[0]

    def get_authorization_code_challenge_method(self, authorization_code):
        return challenges.get(authorization_code.code, (None, None))[1]


register_grant = AuthorizationServer.register_grant


def register_with_pkce(self, grant_cls, extensions=None):
    if grant_cls is mock_app.AuthorizationCodeGrant:
        extensions = list(extensions or []) + [Pkce(required=True)]
    return register_grant(self, grant_cls, extensions)


AuthorizationServer.register_grant = register_with_pkce


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redirect-uri", required=True)
    args = parser.parse_args()
    users = [
        oidc_provider_mock.User(sub="ada", claims={"email": "ada@example.com", "email_verified": True, "name": "Ada"}),
        oidc_provider_mock.User(sub="eve", claims={"email": "eve@other.example", "email_verified": True, "name": "Eve"}),
    ]
    app = oidc_provider_mock.app(require_client_registration=True, require_nonce=True, user_claims=users)
    server = werkzeug.serving.make_server("127.0.0.1", args.port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registered = app.test_client().post(
        "/oauth2/clients", json={"redirect_uris": [args.redirect_uri], "token_endpoint_auth_method": "client_secret_basic"}
    )
    assert registered.status_code == 201, registered.get_data(as_text=True)
    client = registered.get_json()
    print(json.dumps({"client_id": client["client_id"], "client_secret": client["client_secret"]}), flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
