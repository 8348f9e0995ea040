// Echo backend for the end-to-end tests (njs 0.7.x).
//
//   js_import echo from t/echo.js;      (emitted by %%TEST_GLOBALS_HTTP%%)
//   location / { client_body_buffer_size 1m; js_content echo.echo; }
//
// Answers 200 application/json:
//   {"method": ..., "uri": <raw request URI incl. query>,
//    "headers": {<lowercased name>: <value, or array of values if repeated>},
//    "body": <request body text, or null when there is none>}
//
// The body must fit in client_body_buffer_size (njs cannot read a body
// that nginx buffered to a temporary file).

function echo(r) {
    var headers = {};
    var raw = r.rawHeadersIn;

    for (var i = 0; i < raw.length; i++) {
        var name = raw[i][0].toLowerCase();
        var value = raw[i][1];

        if (!Object.prototype.hasOwnProperty.call(headers, name)) {
            headers[name] = value;

        } else if (Array.isArray(headers[name])) {
            headers[name].push(value);

        } else {
            headers[name] = [headers[name], value];
        }
    }

    var body = null;
    var len = r.headersIn['Content-Length'];
    var te = r.headersIn['Transfer-Encoding'];

    if ((len !== undefined && len !== '0') || te !== undefined) {
        body = r.requestText;
        if (body === undefined) {
            body = null;
        }
    }

    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify({
        method: r.method,
        uri: r.variables.request_uri,
        headers: headers,
        body: body
    }) + '\n');
}

export default { echo };
