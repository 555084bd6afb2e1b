// Types over the REST contract for the web UI's API module (../assets/js/api.js), read only by the
// type check (scripts/web_types.py): the browser never loads this file. 'shop-openapi' is what
// openapi-typescript generates from the gateway's /openapi.json (tsconfig.json maps the name), so
// a route, parameter, body or field that api.js uses and the contract no longer has fails tsc.

import type { components, paths } from 'shop-openapi';

export type Schemas = components['schemas'];

/** The REST API's paths under /api/v1 as the document writes them: '/products/{productId}'. */
type Api = { [K in keyof paths as K extends `/api/v1${infer Rest}` ? Rest : never]: paths[K] };
export type ApiPath = keyof Api;

type Verb = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** A method as fetch sends it. */
export type Method = Uppercase<Verb>;
/** The paths that answer the method (openapi-typescript writes `put?: never` for a method a path
 * does not have). A route the contract lacks is reported on the route argument itself. */
export type PathFor<M extends Method> = {
  [P in ApiPath]: undefined extends Api[P][Lowercase<M> & Verb] ? never : P;
}[ApiPath];

type Operation<P extends ApiPath, M extends Method> = NonNullable<Api[P][Lowercase<M> & Verb]>;
type Params<O, In extends string> = O extends { parameters: infer Ps }
  ? (In extends keyof Ps ? Ps[In] : undefined)
  : undefined;
type Json<T> = T extends { content: { 'application/json': infer J } } ? J : never;
type BodyOf<O> = O extends { requestBody: infer B }
  ? Json<B>
  : O extends { requestBody?: infer B }
    ? Json<B> | undefined
    : undefined;

/** An option named Key: absent when the operation has no such part, optional when the part is,
 * required when the part is (path parameters, a required body). */
type Part<Key extends string, T> = [T] extends [undefined]
  ? { [K in Key]?: never }
  : undefined extends T
    ? { [K in Key]?: Exclude<T, undefined> }
    : { [K in Key]: T };

type HeaderParams<O> = Exclude<Params<O, 'header'>, undefined>;
/** `Idempotency-Key`: required when the contract requires it, else allowed only where documented. */
type IdempotencyOption<O> = [HeaderParams<O>] extends [never]
  ? { idempotencyKey?: never }
  : HeaderParams<O> extends { 'Idempotency-Key': unknown }
    ? { idempotencyKey: string }
    : 'Idempotency-Key' extends keyof HeaderParams<O>
      ? { idempotencyKey?: string }
      : { idempotencyKey?: never };
/** The guest cart's X-Session-ID is sent only to operations that document it. */
type GuestOption<O> = [HeaderParams<O>] extends [never]
  ? { guest?: never }
  : 'X-Session-ID' extends keyof HeaderParams<O>
    ? { guest?: boolean }
    : { guest?: never };

/** The JSON body of an operation (what `body` takes). */
export type Body<P extends ApiPath, M extends Method> = Exclude<BodyOf<Operation<P, M>>, undefined>;
/** The query parameters of an operation (what `query` takes). */
export type Query<P extends ApiPath, M extends Method> = Exclude<Params<Operation<P, M>, 'query'>, undefined>;

/** What a URL of the operation takes: its path parameters and its query. */
export type UrlParts<P extends ApiPath, M extends Method> = Part<'path', Params<Operation<P, M>, 'path'>> &
  Part<'query', Params<Operation<P, M>, 'query'>>;
/** url()'s parts argument: required when the operation has path parameters. */
export type UrlArgs<P extends ApiPath, M extends Method> = {} extends UrlParts<P, M>
  ? [parts?: UrlParts<P, M>]
  : [parts: UrlParts<P, M>];

export type RequestOptions<P extends ApiPath, M extends Method> = UrlParts<P, M> &
  Part<'body', BodyOf<Operation<P, M>>> &
  IdempotencyOption<Operation<P, M>> &
  GuestOption<Operation<P, M>> & { auth?: boolean; retry?: boolean };
/** request()'s options argument: required when the operation has something required to send. */
export type RequestArgs<P extends ApiPath, M extends Method> = {} extends RequestOptions<P, M>
  ? [options?: RequestOptions<P, M>]
  : [options: RequestOptions<P, M>];

type Responses<O> = O extends { responses: infer R } ? R : never;
type SuccessStatus = 200 | 201 | 202 | 204;
/** The parsed body of the operation's success answer; null for 202 and 204 (no content). */
export type Success<P extends ApiPath, M extends Method> = {
  [S in keyof Responses<Operation<P, M>> & SuccessStatus]: S extends 202 | 204
    ? null
    : Json<Responses<Operation<P, M>>[S]>;
}[keyof Responses<Operation<P, M>> & SuccessStatus];
