#!/usr/bin/perl

# One token, from one place (RFC 6750 section 2: one method per request):
# a location that reads its token from a header or a cookie refuses a
# request that also carries a Bearer token, a second such header, a second
# such cookie, or an access_token query parameter, as token_ambiguous; a
# present but empty token is token_malformed wherever it comes from.  Each
# refused request is first shown accepted with its token in one place only,
# so the refusal is about the second token, not the first.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        add_header X-Reason $welby_reason always;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /hdr/ {
            welby on;
            welby_token header=X-Token;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /cookie/ {
            welby on;
            welby_token cookie=at;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

$t->run();

sub tok {
    return jwt(key => $key, set => { iss => 'https://issuer.test',
        aud => 'https://fhir.test' });
}

my ($A, $B) = (tok(), tok());     # two valid tokens

# [what, uri, headers, "status reason"]
my @rows = (

    # ---- welby_token header=X-Token ---------------------------------------
    ['header=X-Token: a valid token in X-Token (control)',
        '/hdr/x', ["X-Token: $A"], '200'],
    ['header=X-Token: X-Token and a Basic Authorization header (control: '
        . 'not a second token)',
        '/hdr/x', ["X-Token: $A", 'Authorization: Basic dXNlcjpwYXNz'],
        '200'],
    ['header=X-Token: X-Token and Authorization: Bearer',
        '/hdr/x', ["X-Token: $A", "Authorization: Bearer $B"],
        '400 token_ambiguous'],
    ['header=X-Token: two X-Token headers',
        '/hdr/x', ["X-Token: $A", "X-Token: $B"], '400 token_ambiguous'],
    ['header=X-Token: the same token in two X-Token headers',
        '/hdr/x', ["X-Token: $A", "X-Token: $A"], '400 token_ambiguous'],
    ['header=X-Token: X-Token and an access_token query',
        "/hdr/x?access_token=$B", ["X-Token: $A"], '400 token_ambiguous'],
    ['header=X-Token: an empty X-Token',
        '/hdr/x', ['X-Token:'], '401 token_malformed'],

    # ---- welby_token cookie=at --------------------------------------------
    ['cookie=at: a valid token in cookie at (control)',
        '/cookie/x', ["Cookie: theme=dark; at=$A"], '200'],
    ['cookie=at: cookie at and Authorization: Bearer',
        '/cookie/x', ["Cookie: at=$A", "Authorization: Bearer $B"],
        '400 token_ambiguous'],
    ['cookie=at: two at cookies in one Cookie header',
        '/cookie/x', ["Cookie: at=$A; theme=dark; at=$B"],
        '400 token_ambiguous'],
    ['cookie=at: an at cookie in each of two Cookie headers',
        '/cookie/x', ["Cookie: at=$A", "Cookie: at=$B"],
        '400 token_ambiguous'],
    ['cookie=at: cookie at and an access_token query',
        "/cookie/x?access_token=$B", ["Cookie: at=$A"],
        '400 token_ambiguous'],
    ['cookie=at: at and an encoded a%74 (PHP decodes cookie names)',
        '/cookie/x', ["Cookie: at=$A; a%74=$B"], '400 token_ambiguous'],
    ['cookie=at: at and "at " with a blank before "="',
        '/cookie/x', ["Cookie: at=$A; at =$B"], '400 token_ambiguous'],
    ['cookie=at: at and AT',
        '/cookie/x', ["Cookie: at=$A; AT=$B"], '400 token_ambiguous'],
    ['cookie=at: two at cookies split by "," (RFC 2109)',
        '/cookie/x', ["Cookie: at=$A, at=$B"], '400 token_ambiguous'],
    ['cookie=at: at and atx, another name (control)',
        '/cookie/x', ["Cookie: at=$A; atx=$B; xat=$B"], '200'],
    ['cookie=at: an empty at cookie',
        '/cookie/x', ['Cookie: theme=dark; at='], '401 token_malformed'],

    # ---- welby_token bearer (the default) ---------------------------------
    ['bearer: a valid Bearer token (control)',
        '/x', ["Authorization: Bearer $A"], '200'],
    ['bearer: the scheme and no token',
        '/x', ['Authorization: Bearer'], '401 token_malformed'],
    ['bearer: the scheme and spaces only',
        '/x', ['Authorization: Bearer    '], '401 token_malformed'],
    ['bearer: a Bearer token and an X-Token header (not configured here: '
        . 'control)',
        '/x', ["Authorization: Bearer $A", "X-Token: $B"], '200'],
);

$t->plan(scalar @rows);

my $n = 0;

for my $row (@rows) {
    my ($what, $uri, $headers, $expect) = @$row;
    my $r = parse_response(http_req(uri => $uri,
        headers => [@$headers, 'X-Request-Id: src-' . ++$n]));
    my $j = $r && $r->json;
    my @bad;

    if (!$r) {
        push @bad, 'no response';

    } elsif ($expect eq '200') {
        push @bad, 'status ' . $r->status if $r->status != 200;
        push @bad, 'not answered by the backend'
            unless $j && defined $j->{method};

    } else {
        my ($status, $reason) = split / /, $expect;
        my $code = $j && eval { $j->{issue}[0]{details}{coding}[0]{code} };
        push @bad, 'status ' . $r->status if $r->status != $status;
        push @bad, 'reason ' . ($code // 'none')
            unless ($code // '') eq $reason;
        push @bad, 'X-Reason ' . ($r->header('X-Reason') // 'none')
            unless ($r->header('X-Reason') // '') eq $reason;
        push @bad, 'answered by the backend' if $j && defined $j->{method};

        my $error = $status == 400 ? 'invalid_request' : 'invalid_token';
        my @www = $r->header('WWW-Authenticate');
        push @bad, 'WWW-Authenticate ' . join(' | ', @www)
            unless @www == 1
                && $www[0] =~ /^Bearer realm="welby", error="$error", /;
    }

    ok(!@bad, "$what: $expect") or diag(join('; ', @bad));
}
