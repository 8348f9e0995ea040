#!/usr/bin/perl

# The FHIR classification of the classify step, through nginx: under a
# welby_fhir_base every request becomes an interaction, a type, an id and
# the patients it names ($welby_fhir_* and the audit record's "fhir"), or
# is refused with fhir_unclassifiable, fhir_type_unknown,
# fhir_format_unsupported or request_malformed before the backend sees
# it.  Tokens are off here: what is classified does not depend on them
# (the policy step, which decides on the classification, has its own
# tests).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);
use JSON::PP ();

my $t = Welby::Nginx->new();
my $d = $t->testdir();

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t
    welby_audit_log %%TESTDIR%%/audit.log;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name gw;
        welby on;
        welby_token off;

        add_header X-Reason $welby_reason always;
        add_header X-Interaction $welby_fhir_interaction always;
        add_header X-Type $welby_fhir_type always;
        add_header X-Id $welby_fhir_id always;
        add_header X-Patient $welby_fhir_patient always;

        location /fhir {
            welby_fhir_base /fhir;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /api/ {
            welby_fhir_base /api/r4;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /plain/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { client_body_buffer_size 64k; js_content echo.echo; }
    }
}
EOF

$t->run();

my $n = 0;

sub req {
    my ($method, $uri, $h, $body) = @_;
    my $id = 'fc-' . ++$n;
    my $r = parse_response(http_req(method => $method, uri => $uri,
        headers => [@{ $h || [] }, "X-Request-Id: $id"],
        defined $body ? (body => $body) : ()));
    return ($r, $id);
}

# "status reason | interaction type id patients", as the client sees it
sub seen {
    my ($r) = @_;
    return 'no response' unless $r;
    my @v = map { $r->header($_) // '' }
        qw(X-Reason X-Interaction X-Type X-Id X-Patient);
    my $s = $r->status . ($v[0] ne '' ? " $v[0]" : '');
    return "$s | " . join(' ', map { $_ eq '' ? '-' : $_ } @v[1 .. 4]);
}

my $json = ['Content-Type: application/fhir+json'];
my $form = ['Content-Type: application/x-www-form-urlencoded'];
my $abs = 'http://localhost/fhir';

# [method, uri, headers, body, expected]
my @cases = (
    # instance interactions
    ['GET', '/fhir/Patient/p1', [], undef, '200 | read Patient p1 p1'],
    ['HEAD', '/fhir/Patient/p1', [], undef, '200 | read Patient p1 p1'],
    ['GET', '/fhir/Observation/o3', [], undef,
        '200 | read Observation o3 -'],
    ['GET', '/fhir/Patient/p1/_history/2', [], undef,
        '200 | vread Patient p1 p1'],
    ['GET', '/fhir/Patient/p1/_history', [], undef,
        '200 | history-instance Patient p1 p1'],
    ['PUT', '/fhir/Patient/p1', $json, '{"resourceType":"Patient"}',
        '200 | update Patient p1 p1'],
    ['PATCH', '/fhir/Observation/o1',
        ['Content-Type: application/json-patch+json'], '[]',
        '200 | patch Observation o1 -'],
    ['DELETE', '/fhir/Condition/c1', [], undef,
        '200 | delete Condition c1 -'],
    ['POST', '/fhir/Observation', $json, '{"resourceType":"Observation"}',
        '200 | create Observation - -'],
    ['GET', '/fhir/Observation/_history', [], undef,
        '200 | history-type Observation - -'],
    ['GET', '/fhir/_history?_count=10', [], undef,
        '200 | history-system - - -'],
    ['GET', '/fhir/metadata', [], undef, '200 | capabilities - - -'],
    ['POST', '/fhir', $json, '{"resourceType":"Bundle"}',
        '200 | batch - - -'],
    ['POST', '/fhir/', $json, '{"resourceType":"Bundle"}',
        '200 | batch - - -'],

    # searches and the patients they name
    ['GET', '/fhir/Observation?patient=p1', [], undef,
        '200 | search-type Observation - p1'],
    ['GET', '/fhir/Observation?subject=Patient/p1,Patient%2Fp2', [], undef,
        '200 | search-type Observation - p1 p2'],
    ['GET', '/fhir/Observation?subject:Patient=p1&patient=p3', [], undef,
        '200 | search-type Observation - p1 p3'],
    ['GET', "/fhir/Observation?subject=$abs/Patient/p2", [], undef,
        '200 | search-type Observation - p2'],
    ['GET', '/fhir/Observation?%70atient=%70%31', [], undef,
        '200 | search-type Observation - p1'],
    ['GET', '/fhir/Observation?code=1234-5', [], undef,
        '200 | search-type Observation - -'],
    ['GET', '/fhir/Patient?_id=p1,p2', [], undef,
        '200 | search-type Patient - p1 p2'],
    ['GET', '/fhir/Patient/p1/Observation?code=x', [], undef,
        '200 | search-type Observation - p1'],
    ['GET', '/fhir?_type=Observation,Condition&patient=p1', [], undef,
        '200 | search-system - - p1'],
    ['GET', '/fhir/Observation?patient=p1&_include=Observation:patient',
        [], undef, '200 | search-type Observation - p1'],
    ['GET', '/fhir/Patient?_id=p1&_revinclude=Observation:subject', [],
        undef, '200 | search-type Patient - p1'],
    ['GET', '/fhir/Observation?patient=p1&_format=json', [], undef,
        '200 | search-type Observation - p1'],
    ['POST', '/fhir/Observation/_search', $form, 'patient=p2',
        '200 | search-type Observation - -'],
    ['GET', '/fhir/Patient/p1/$everything', [], undef,
        '200 | operation Patient p1 p1'],
    ['GET', '/fhir/Observation/$lastn?patient=p1', [], undef,
        '200 | operation Observation - p1'],

    # refused: what cannot be classified safely
    ['GET', '/fhir/Observation?subject=Group/g1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?subject.name=Smith', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Patient?_has:Observation:patient:code=1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient:missing=true', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=p1&_include=*', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=p1'
        . '&_include:iterate=Observation:patient', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=https://other.example/Patient/p1',
        [], undef, '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=p1&_whatever=1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir?patient=p1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=p1&code=x;_include=Observation:subject',
        [], undef, '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Observation?patient=p1&code=a%3Bb', [], undef,
        '200 | search-type Observation - p1'],
    ['DELETE', '/fhir/Observation?patient=p1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Patient/p1', ['X-HTTP-Method-Override: DELETE'], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Patient/p1', ['X-Method-Override: DELETE'], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['POST', '/fhir/Observation', [@$json, 'If-None-Exist: patient=p2'],
        '{"resourceType":"Observation"}',
        '403 fhir_unclassifiable | - - - -'],
    ['POST', '/fhir/Observation', $form, 'patient=p2',
        '403 fhir_unclassifiable | - - - -'],
    ['POST', '/fhir/Observation/_search', $json, '{"patient":"p2"}',
        '403 fhir_unclassifiable | - - - -'],
    ['POST', '/fhir/Observation/_search',
        ['Content-Type: multipart/form-data; boundary=x'], "--x--\r\n",
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhirx/Patient/p1', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/fhir/Patient/p1/', [], undef,
        '403 fhir_unclassifiable | - - - -'],
    ['GET', '/api/other', [], undef, '403 fhir_unclassifiable | - - - -'],

    # refused: unknown types, bad encodings and ids, other formats
    ['GET', '/fhir/patient/p1', [], undef,
        '404 fhir_type_unknown | - - - -'],
    ['GET', '/fhir/Nope?x=1', [], undef, '404 fhir_type_unknown | - - - -'],
    ['GET', '/fhir/Patient/p1/Nope', [], undef,
        '404 fhir_type_unknown | - - - -'],
    ['GET', '/fhir?_type=Observation,Nope&patient=p1', [], undef,
        '404 fhir_type_unknown | - - - -'],
    ['GET', '/fhir/Patient/a_b', [], undef,
        '400 request_malformed | - - - -'],
    ['GET', '/fhir/Observation?patient=p1%zz', [], undef,
        '400 request_malformed | - - - -'],
    ['GET', '/fhir/Observation?patient=p1%00', [], undef,
        '400 request_malformed | - - - -'],
    ['GET', '/fhir/Observation?=p1', [], undef,
        '400 request_malformed | - - - -'],
    ['GET', '/fhir/Patient/p1?_format=xml', [], undef,
        '415 fhir_format_unsupported | - - - -'],

    # elsewhere: another base, and no base at all
    ['GET', '/api/r4/Patient/p2', [], undef, '200 | read Patient p2 p2'],
    ['GET', '/plain/Patient/p2?subject.name=x', [], undef,
        '200 | - - - -'],
);

my %expect;

for my $c (@cases) {
    my ($method, $uri, $h, $body, $expect) = @$c;
    my ($r, $id) = req($method, $uri, $h, $body);
    is(seen($r), $expect, "$method $uri: $expect");
    $expect{$id} = [$method, $uri, $expect];
}

###############################################################################
# the audit record says the same, for each request

my %rec;
$t->wait_for(sub {
    %rec = ();
    for (split /\n/, $t->read_file('audit.log')) {
        my $j = eval { JSON::PP->new->decode($_) } or next;
        my $id = $j->{client_request_id} // '';
        $rec{$id} = $j if exists $expect{$id};
    }
    return keys %rec == keys %expect;
});

for my $id (sort { ($a =~ /(\d+)/)[0] <=> ($b =~ /(\d+)/)[0] } keys %expect)
{
    my ($method, $uri, $expect) = @{ $expect{$id} };
    my $j = $rec{$id};
    my $f = $j && $j->{fhir} || {};
    my ($status, $reason, $rest) = $expect =~ /^(\d+)(?: (\S+))? \| (.*)$/;
    my $got = $j
        ? join(' ', $j->{http}{status} // '-', $j->{reason} // '-', '|',
               map { $f->{$_} // '-' } qw(interaction type id patient))
        : 'no record';
    is($got, "$status " . ($reason // '-') . " | $rest",
        "audit: $method $uri");
}

$t->done_testing();
